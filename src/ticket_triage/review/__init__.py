"""The human review queue (store + web page) that feeds retraining.

``ReviewStore`` is importable without the web stack; ``create_app`` / ``serve_review`` live in
``ticket_triage.review.app`` (Starlette, Jinja2, uvicorn imported there).
"""

from ticket_triage.review.store import (Correction, QueueItem, QueueStats, ReviewError,
                                        ReviewStore)

__all__ = ["ReviewStore", "ReviewError", "QueueItem", "Correction", "QueueStats"]
