"""ELT: Elastic Looped Transformers for visual generation, and the harness that audits them."""

__version__ = "0.1.0"
