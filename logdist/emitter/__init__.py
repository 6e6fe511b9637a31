"""The emitter daemon: generates packets at a rate and delivers them to the distributor; with
`fleet`, many emitters in one process (`node.make_app`)."""
