//! Stage `ocr`: text detection, line angle classification and recognition.
