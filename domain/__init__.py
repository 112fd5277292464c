"""The pure domain: aggregates, events, value objects, pricing. No I/O, no clock."""
