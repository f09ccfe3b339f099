"""KServe V2 gRPC frontend (`inference.GRPCInferenceService` from tritonclient's bindings)."""
