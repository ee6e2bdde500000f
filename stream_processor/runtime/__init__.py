"""Entry points and the batch pipeline that wires the pure core to the sinks."""
