"""compact-biomed: reproduce 'On the Effectiveness of Compact Biomedical Transformers' end to end."""

__version__ = "0.1.0"
