"""Authentication at the Core API: Entra ID bearer tokens (or the data dir's local issuer), validated as
FoundationaLLM's Core API validates them; tokens for the Core API's clients."""
