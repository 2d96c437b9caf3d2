"""The StyleDrop designer app (Streamlit): `styledrop serve`, or `streamlit run ui/app.py`.

It talks to the service only through `worker.client` and the store, and never imports
JAX or PyTorch: every model runs in a worker.
"""
