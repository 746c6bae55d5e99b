"""The model card of a DALR student, one module per job.

- :mod:`~dalr_hf.publish.card.collect`: what the card says about a run, gathered after training and saved as
  ``dalr_card_data.json``.
- :mod:`~dalr_hf.publish.card.base_model`: the base model's Hub id (also for ``pypi:`` packages and folders).
- :mod:`~dalr_hf.publish.card.results`: evaluation results as tables and the Hub's ``model-index``.
- :mod:`~dalr_hf.publish.card.citations`: the BibTeX entries.
- :mod:`~dalr_hf.publish.card.render`: :class:`DALRModelCardData`, sentence-transformers' card data with the DALR
  sections, and writing the card.
"""
