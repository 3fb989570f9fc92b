"""Operations tooling, never on the worker path: cloud resources as code, Pub/Sub setup,
the local emulators, the demos and the flex template's launcher."""
