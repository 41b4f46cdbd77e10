//! Stage `layout`, step `detect_regions`: the layout model.
