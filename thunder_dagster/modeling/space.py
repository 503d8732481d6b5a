"""The search space's choices, in one place that loads no TensorFlow: the launchpad, the CLI,
the builder and the study all read them from here."""

FAMILIES = ("gru", "conv", "transformer")
CONTEXT_LENGTHS = (32, 64, 128)
ACTIVATIONS = ("relu", "gelu", "swish")

# Configurations known to train well on character text within minutes on two cores; the study
# runs the first that fits its space before TPE explores, so a short budget still ends well.
KNOWN_GOOD = (
    {
        "family": "gru",
        "context_length": 64,
        "learning_rate": 5e-3,
        "hidden_size": 256,
        "layers": 1,
        "dropout": 0.0,
        "activation": "gelu",
    },
    {
        "family": "transformer",
        "context_length": 64,
        "learning_rate": 2e-3,
        "hidden_size": 128,
        "layers": 4,
        "dropout": 0.0,
        "activation": "gelu",
    },
    {
        "family": "conv",
        "context_length": 64,
        "learning_rate": 2e-3,
        "hidden_size": 128,
        "layers": 4,
        "dropout": 0.0,
        "activation": "gelu",
    },
)
