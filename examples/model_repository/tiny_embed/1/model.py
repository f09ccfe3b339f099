"""A text embedding model: the character trigrams of a text (lower-cased, framed by spaces),
hashed into 4096 buckets by CRC-32, summed through a random projection drawn from the config's
`seed`, and scaled to unit length. Texts that share trigrams point the same way. A token is a
trigram."""

import zlib

import numpy as np

BUCKETS = 4096
WIDTH = 64


class InferdModel:
    def initialize(self, context):
        rng = np.random.default_rng(int(context.parameters.get("seed", "0")))
        self.projection = rng.standard_normal((BUCKETS, WIDTH)).astype(np.float32)

    def execute(self, batch):
        texts = [t.decode(errors="replace") for t in batch.inputs["TEXT"].reshape(-1)]
        embeddings = np.zeros((len(texts), WIDTH), np.float32)
        tokens = np.zeros((len(texts), 1), np.int32)
        for row, text in enumerate(texts):
            framed = f" {text.lower()} "
            trigrams = [framed[i : i + 3] for i in range(len(framed) - 2)]
            buckets = [zlib.crc32(t.encode()) % BUCKETS for t in trigrams]
            vector = self.projection[buckets].sum(axis=0)
            embeddings[row] = vector / max(float(np.linalg.norm(vector)), 1e-12)
            tokens[row] = len(trigrams)
        return {"EMBEDDING": embeddings, "TOKENS": tokens}
