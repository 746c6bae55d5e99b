"""Publishing a trained DALR student: the export (a plain SentenceTransformer folder), its model card, the Hub
upload, and the ``export`` / ``push`` commands.

- :mod:`dalr_hf.publish.export`: the publishable folder (``export_model``, ``export_after_training``).
- :mod:`dalr_hf.publish.card`: the model card (card data, evaluation tables, base-model id, rendering through
  sentence-transformers' card machinery with the template in ``dalr_hf/publish/templates/``).
- :mod:`dalr_hf.publish.hub`: the upload (``push_to_hub``, ``publish_after_training``); it uses the export, never
  the other way round.
- :mod:`dalr_hf.publish.cli`: ``dalr-hf export`` and ``dalr-hf push``.
"""
