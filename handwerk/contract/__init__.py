"""The public event contract: the CloudEvents JSON Schema (shipped as package data and served by
the API), encoding and decoding of project events, and the text of a project that is embedded.
Upstream systems write this format too, so a change here is a change to a public interface.
Anything may import this package; it imports nothing of handwerk's.
"""
