//! Stage `enrich`: reading order, language, key fields, tables, page class.
