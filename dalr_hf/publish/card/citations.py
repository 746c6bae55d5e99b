"""The BibTeX entries a DALR card cites: DALR itself and the methods it builds on."""

from __future__ import annotations

CITATIONS = (
    (
        "DALR",
        """@inproceedings{he2025dalr,
  title         = {{DALR}: Dual-level Alignment Learning for Multimodal Sentence Representation Learning},
  author        = {He, Kang and Ding, Yuzhe and Wang, Haining and Li, Fei and Teng, Chong and Ji, Donghong},
  booktitle     = {Findings of the Association for Computational Linguistics: ACL 2025},
  year          = {2025},
  eprint        = {2506.21096},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2506.21096}
}""",
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
