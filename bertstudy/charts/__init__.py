"""Stage 5, the pictures: every chart, their shared style and the CJK fonts. Charts draw what the analysis
computed.
"""
