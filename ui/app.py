"""The StyleDrop designer app: the entry script (`streamlit run ui/app.py`).

Pages: New style (upload and train), Jobs (live progress, cancel, download), Review (pick
candidates, train round 2), Compare (rounds side by side, blind A/B study) and Generate.
The sidebar says which store and broker the app uses, and whether the broker answers.
With a password file set (`ui.access`), a session signs in first.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import access, services

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="StyleDrop", page_icon=":material/palette:", layout="wide")
access.require_login()
navigation = st.navigation(
    [
        st.Page(PAGES / "new_style.py", title="New style", icon=":material/upload:", default=True),
        st.Page(PAGES / "jobs.py", title="Jobs", icon=":material/monitoring:"),
        st.Page(PAGES / "review.py", title="Review", icon=":material/check_box:"),
        st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare:"),
        st.Page(PAGES / "generate.py", title="Generate", icon=":material/brush:"),
    ]
)
with st.sidebar:
    st.caption(f"Store: `{services.store().url}`")
    problem = services.broker_problem()
    if problem:
        st.error(problem, icon=":material/cloud_off:")
    else:
        st.caption("Queue: connected")
navigation.run()
