"""The in-memory store's internals: plain synchronous tables that `InMemoryJobStorage` guards
with one lock. Nothing here awaits or locks; every function runs inside one atomic call."""
