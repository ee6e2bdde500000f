"""Pure core: decoding, ordering, deduping and row/item building. No clients, no I/O."""
