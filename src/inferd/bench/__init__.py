"""`inferd bench`: a load tester for any KServe V2 server (inferd, Triton, MLServer).

A client tool: it speaks only the V2 protocol through the official `tritonclient`, and imports
nothing of the server's layers. Its heavy dependencies (`tritonclient[http]`, `rich`,
`matplotlib`: the `bench` extra) are imported only by the modules that run a benchmark, so
`inferd.bench.options` stays cheap to import for the CLI parser.

    options   what to measure: load steps, shapes, data, outputs (pure, no heavy imports)
    inputs    request tensors generated from the model's metadata, or read from a JSON file
    transport one async client per protocol (HTTP with binary data, gRPC)
    stats     the server's statistics extension, diffed around a step
    load      drives one step (fixed concurrency or fixed request rate) and times it
    results   per-step figures, and their CSV / JSON files
    report    live progress bar and the final table (rich)
    plot      latency vs throughput picture (matplotlib)
    runner    ties the above together for one `inferd bench` run
"""
