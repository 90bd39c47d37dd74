"""Streamlit glue shared by the pages: session state, cached loaders, the background runner."""
