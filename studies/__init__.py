"""The user study: materials builder, SQLAlchemy schema, Streamlit app, analysis, simulated participants.

The participant app imports no torch: it serves prebuilt files."""
