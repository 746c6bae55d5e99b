"""The BibTeX entries a DALR card cites: DALR itself and the methods it builds on."""

from __future__ import annotations

from dalr_hf.losses.presets import DALR_CITATION

CITATIONS = (
    (
        "DALR",
        DALR_CITATION,
    ),
    (
        "SimCSE",
        """@inproceedings{gao2021simcse,
  title     = {{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author    = {Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle = {Proceedings of the 2021 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  year      = {2021}
}""",
    ),
    (
        "MCSE",
        """@inproceedings{zhang2022mcse,
  title     = {{MCSE}: Multimodal Contrastive Learning of Sentence Embeddings},
  author    = {Zhang, Miaoran and Mosbach, Marius and Adelani, David Ifeoluwa and Hedderich, Michael A. and
               Klakow, Dietrich},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for
               Computational Linguistics: Human Language Technologies (NAACL)},
  year      = {2022}
}""",
    ),
)
