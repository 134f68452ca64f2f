"""The model: the base model and tokenizer with LoRA, and sampling from it."""
