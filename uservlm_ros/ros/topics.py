"""The graph's topic and action names, in one place (nodes, tools and tests import them).

Names are relative (ROS name resolution puts them under the node's namespace): with no namespace
they resolve to `/camera/image_raw`, `/uservlm/faces`, ...; `uservlm run --namespace robot1` or
`ros2 launch uservlm pepper.launch.py namespace:=robot1` moves the whole graph to
`/robot1/camera/image_raw`, ... with one argument. /diagnostics stays absolute: diagnostic
aggregators listen there.
"""

IMAGE = "camera/image_raw"  # sensor_msgs/Image, SENSOR_QOS
CAMERA_INFO = "camera/camera_info"  # sensor_msgs/CameraInfo
FACES = "uservlm/faces"  # uservlm/FaceArray
PROFILE = "uservlm/user_profile"  # uservlm/UserProfile, LATCHED_QOS
DEBUG_IMAGE = "uservlm/debug_image"  # sensor_msgs/Image, only while subscribed
QUESTION = "uservlm/question"  # std_msgs/String, REQUEST_QOS
RESPONSE = "uservlm/response"  # uservlm/Response, REQUEST_QOS
RESPOND_ACTION = "uservlm/respond"  # uservlm/action/Respond
FORGET_PERSONS = "uservlm/forget_persons"  # uservlm/srv/ForgetPersons (user_profiler_node)
SPEECH_EVENTS = "uservlm/speech_events"  # uservlm/SpeechEvent, REQUEST_QOS
SPEECH = "speech"  # std_msgs/String, naoqi_driver2's text-to-speech input
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray
AUDIO = "uservlm/audio"  # uservlm/AudioChunk, RELIABLE_QOS, while subscribed
TRANSCRIPT = "uservlm/transcript"  # uservlm/Transcript, RELIABLE_QOS


def absolute(name: str, namespace: str = "") -> str:
    """`name` resolved in `namespace` (the root by default), as bags and logs show topics."""
    if name.startswith("/"):
        return name
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{prefix}/{name}"
