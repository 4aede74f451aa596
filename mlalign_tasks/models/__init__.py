"""Models as inputs: the built-in tiny and toy models, GGUF files and packaged real models, checks of model and adapter
arguments, a model's identity, loading (device, dtype, 4-bit), and lm-eval's model classes."""
