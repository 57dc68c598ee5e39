"""How the embedded model ``qcourse-tiny`` is made: its tokenizer and its training run."""
