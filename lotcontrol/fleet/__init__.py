"""The fleet: what one lot tells and takes from the village over MQTT (lotcontrol/<lot>/...).

``mqtt`` is the one MQTT client (a link that never blocks its caller); ``publish`` turns the
controller's events and state into messages; ``discovery`` announces the lot to Home Assistant;
``residents`` (the hub's part) keeps the lot's gallery in step with the hub. Nothing here is on the
safety loop's path: the loop only appends to the link's bounded queue.
"""
