"""What a translated design contains: the object tree and properties the metadata endpoints serve.

`ifc` and `obj` read the uploaded file itself; `synthetic` invents a deterministic tree for everything else;
`checks` decides whether a file is what its extension says (if not, the translation fails).
"""
