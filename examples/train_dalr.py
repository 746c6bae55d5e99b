"""Train a DALR sentence encoder from a YAML recipe.

    accelerate launch examples/train_dalr.py --config examples/configs/demo_offline.yaml
    accelerate launch --num_processes 4 examples/train_dalr.py --config examples/configs/bert_base_wiki_flickr.yaml
    python examples/train_dalr.py --config examples/configs/bert_base_wiki_flickr.yaml --learning_rate 3e-5

Every YAML key is a field of ``dalr_hf.scripts.train.ScriptArguments`` or of ``dalr_hf.DALRTrainingArguments``
(``python examples/train_dalr.py --help`` lists them all); command-line flags override the file. The run leaves a
folder that ``SentenceTransformer(output_dir)`` loads, and ends by comparing the student with its base model as
shipped on the STS test sets (per-task deltas and a plain verdict; ``--sts_test false`` skips it).
"""

import sys

from dalr_hf.cli import main

if __name__ == "__main__":
    # the `dalr-hf train` command: errors a user can act on are one `error: ...` line with exit status 1
    sys.exit(main(["train", *sys.argv[1:]]))
