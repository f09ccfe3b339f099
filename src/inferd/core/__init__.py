"""Core types shared by every layer: requests, responses, datatypes, errors, observers."""
