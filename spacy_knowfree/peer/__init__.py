"""The classic peer inside the pipeline: a character n-gram CRF whose tags
feed the neural encoder (``knowfree_crf``, :mod:`.crf_peer`)."""
