"""edgeopt-agent: runs on each board; reports it, stores models, runs and measures them.

It needs only grpcio, protobuf, numpy and onnxruntime (never torch, nor anything of
`edgeopt.host`): tests/agent/test_imports.py checks this in a fresh interpreter.
"""
