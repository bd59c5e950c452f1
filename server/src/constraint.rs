//! Constrained decoding through llguidance (JSON object / JSON schema).
