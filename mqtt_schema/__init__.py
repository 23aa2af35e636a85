"""MQTT schema: topics, payload builders (pure), wire codec, consumer decoder, reference doc."""
