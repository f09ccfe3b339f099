"""The in-process API every frontend talks to: models, their states, and inference."""
