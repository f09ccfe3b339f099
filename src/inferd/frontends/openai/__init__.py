"""The OpenAI-compatible API (`/v1`) for text models that declare how in their config
(docs/openai.md): generation goes through `Engine.stream`, embeddings through `Engine.infer`.

    mapping.py    a model's `openai.*` config parameters, read once per request
    requests.py   the request bodies, checked, as typed requests
    text.py       a stream of responses as text pieces, cut at stop strings
    documents.py  the response objects and stream chunks
    errors.py     OpenAI's error object and its status
    routes.py     the routes, served from the HTTP frontend's app
"""
