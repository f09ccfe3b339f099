"""A decoupled character-level language model: each generated character is one response.

weights.npz holds the vocabulary and trigram counts (examples/generate_models.py). The next
character is drawn from the counts after the last two characters (the last one alone when that
pair was never seen), greedily at temperature 0 and reproducibly for a given SEED otherwise.
A token is a character, so the prompt's tokens are its characters.
"""

import threading

import numpy as np

DEFAULT_MAX_TOKENS = 16


class InferdModel:
    def initialize(self, context):
        weights = np.load(context.version_dir / "weights.npz")
        self.vocabulary = str(weights["vocabulary"])
        self.index = {char: i for i, char in enumerate(self.vocabulary)}
        self.trigrams = weights["trigrams"].astype(np.float64)
        self.bigrams = self.trigrams.sum(axis=0)

    def execute(self, batch):
        for request in batch.requests:
            prompt = request.inputs["PROMPT"].reshape(-1)[0].decode(errors="replace")
            settings = (
                _scalar(request, "MAX_TOKENS", DEFAULT_MAX_TOKENS),
                _scalar(request, "TEMPERATURE", 1.0),
                _scalar(request, "SEED", 0),
            )
            args = (request.sender, prompt, *settings)
            threading.Thread(target=self.generate, args=args).start()

    def generate(self, sender, prompt, max_tokens, temperature, seed):
        try:
            self.stream(sender, prompt, max_tokens, temperature, seed)
        except Exception as error:  # ends the request with the error instead of leaving it open
            sender.send_error(error)
        else:
            sender.close()

    def stream(self, sender, prompt, max_tokens, temperature, seed):
        rng = np.random.default_rng(seed % 2**64)  # any integer seeds it, negative ones too
        space = self.index[" "]
        context = [self.index.get(c, space) for c in "  " + prompt.lower()][-2:]
        for count in range(1, max_tokens + 1):
            if sender.is_cancelled():  # the client went away: stop early
                break
            token = self.next_token(context, temperature, rng)
            context = [context[1], token]
            sender.send(
                {
                    "TEXT": np.array([self.vocabulary[token].encode()], dtype=object),
                    "PROMPT_TOKENS": np.array([len(prompt)], np.int32),
                    "COMPLETION_TOKENS": np.array([count], np.int32),
                }
            )

    def next_token(self, context, temperature, rng):
        """From the pair's counts, else the last character's, else a space."""
        counts = self.trigrams[context[0], context[1]]
        if not counts.any():
            counts = self.bigrams[context[1]]
        if not counts.any():
            return self.index[" "]
        if temperature <= 0:
            return int(counts.argmax())
        seen = counts > 0
        logits = np.full(counts.shape, -np.inf)
        logits[seen] = np.log(counts[seen]) / temperature  # in logs: no overflow when T is small
        weights = np.exp(logits - logits.max())
        return int(rng.choice(len(counts), p=weights / weights.sum()))


def _scalar(request, name, default):
    value = request.inputs.get(name)
    return default if value is None else value.reshape(-1)[0].item()
