"""Wire protocols: decode into engine requests, encode responses; they talk only to the engine."""
