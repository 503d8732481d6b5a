"""Per-agent low-rank adapters on the shared instruct base: the base in Keras with Keras' own
LoRA on its projections (keras_base.py), the adapter's matrices as files (files.py), what an
adapter learns from (examples.py, material.py), how it learns and is searched and gated
(training.py, adapt.py), one agent's adaptation end to end (agent.py) and its releases
(releases.py); the base's ONNX graph takes an adapter's matrices as inputs, so one loaded graph
serves every agent (instruct/graphs.py).
"""
