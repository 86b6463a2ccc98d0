"""MLflow pyfunc flavour of a ticket-triage bundle, logged as "models from code".

MLflow loads this file (no pickled Python object is stored), then ``load_context`` loads the
bundle through :meth:`ticket_triage.decision.triage.Triage.load` - the same decision code the
service uses. Input: a DataFrame with ``subject`` and ``body`` (optional ``id``); output: one
row per ticket with topic, confidence, band, urgency, reason and source.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class TriagePyfunc(PythonModel):
    def load_context(self, context):
        from ticket_triage.decision.triage import Triage

        self.triage = Triage.load(context.artifacts["bundle"])

    # the DataFrame hint tells MLflow that the logged signature (not the hint) describes the input
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        records = model_input.to_dict(orient="records") if hasattr(model_input, "to_dict") else list(model_input)
        decisions = self.triage.decide(records)
        return pd.DataFrame([{"topic": d.topic, "confidence": d.confidence, "band": d.band, "urgency": d.urgency,
                              "reason": d.reason, "source": d.source} for d in decisions])


mlflow.models.set_model(TriagePyfunc())
