"""Robust Distillation Lab's training core.

The library behind the Streamlit app and the command line: datasets, models, attacks,
training objectives (methods), the Trainer, evaluation and the run registry. It never
imports streamlit, so everything the app shows can be computed headless and tested.
"""

__version__ = "0.1.0"
