"""Cloud connectors: a durable store-and-forward queue (`buffer`), MQTT (`mqtt`), Sparkplug B
(`sparkplug`), AWS IoT Core (`aws`) and Azure IoT Hub (`azure`). aiomqtt and boto3 come with the
`cloud` extra and are imported only by the modules that need them."""
