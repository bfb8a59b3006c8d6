"""The graph's topic and action names, in one place (nodes, tools and tests import them)."""

IMAGE = "/camera/image_raw"  # sensor_msgs/Image, SENSOR_QOS
CAMERA_INFO = "/camera/camera_info"  # sensor_msgs/CameraInfo
FACES = "/uservlm/faces"  # uservlm/FaceArray
PROFILE = "/uservlm/user_profile"  # uservlm/UserProfile, LATCHED_QOS
DEBUG_IMAGE = "/uservlm/debug_image"  # sensor_msgs/Image, only while subscribed
QUESTION = "/uservlm/question"  # std_msgs/String
RESPONSE = "/uservlm/response"  # uservlm/Response
RESPOND_ACTION = "/uservlm/respond"  # uservlm/action/Respond
TRANSCRIPT = "/uservlm/transcript"  # uservlm/Transcript, what the speech node heard
SPEECH_EVENTS = "/uservlm/speech_events"  # std_msgs/String (JSON)
SPEECH = "/speech"  # std_msgs/String, naoqi_driver2's text-to-speech input
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray
