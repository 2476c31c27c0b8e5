"""Survey-map simulation: a wide-field Jy/beam mosaic with its truth catalogue.

``sky`` (grid, WCS, beam), ``sources`` (catalogue reading and drawing), ``render``
(placing sources), ``noise`` (beam-correlated noise), ``build`` (one map or one shard, and
the merge), ``distributed`` (the shards under Lightning's predict loop, ``--devices``),
``output`` (files), ``evaluate`` (a source finder against the truth).
"""
