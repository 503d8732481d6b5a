"""Per-agent low-rank adapters on the shared instruct base: the base in Keras with Keras' own
LoRA on its projections (keras_base.py), the adapter's matrices as files (adapter.py), what an
adapter learns from (examples.py), how it learns (training.py), and the base's ONNX graph that
takes an adapter's matrices as inputs, so one loaded graph serves every agent (instruct/graphs.py).
"""
