"""`inferd bench`: a load tester for any KServe V2 server (inferd, Triton, MLServer).

A client tool: it speaks the V2 protocol through the official `tritonclient` (and, to stream
over HTTP, server-sent events of the generate extension or of the OpenAI `/v1` routes through
`aiohttp`), and imports nothing of the server's layers. Its heavy dependencies
(`tritonclient[http]`, `rich`, `matplotlib`: the `bench` extra) are imported only by the modules
that run a benchmark, so `inferd.bench.options` stays cheap to import for the CLI parser.

    options   what to measure: load steps, shapes, data, outputs (pure, no heavy imports)
    inputs    request tensors generated from the model's metadata, or read from a JSON file
    transport one async client per protocol (HTTP with binary data, gRPC)
    sse       streams of the generate extension (`generate_stream`)
    openai_api streams of the OpenAI routes (`/v1/completions`, `/v1/chat/completions`)
    stats     the server's statistics extension, diffed around a step
    load      drives one step (fixed concurrency or fixed request rate) and times it
    results   per-step figures, and their CSV / JSON files
    report    live progress bar and the final table (rich)
    plot      latency vs throughput picture (matplotlib)
    runner    ties the above together for one `inferd bench` run
"""
