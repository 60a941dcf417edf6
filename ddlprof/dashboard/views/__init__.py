"""The dashboard pages, one script each; ``app.py`` runs them through ``st.navigation``."""
