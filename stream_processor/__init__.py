"""Keep the current state and full history of an Amazon ECS fleet from its event stream."""

__version__ = "0.1.0"
