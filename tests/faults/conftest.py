from tests.chain.conftest import receiver  # noqa: F401 - the OTLP receiver fixture, shared
