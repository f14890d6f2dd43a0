"""OpenAI-compatible backend: the ``openai`` SDK against any server speaking the Chat
Completions API (vLLM, Ollama, LM Studio, the OpenAI API), so patient images can stay on a local
machine. Structured output via ``response_format`` JSON schema (strict).

Requests go through the SDK's ``post`` with the body as it is (the SDK's documented way to send
a body it does not rewrite): ``chat.completions.create`` walks every key and value of the body
against its type annotations before sending, about 9 ms of CPU per request with an image and a
schema, which alone would cap one client at about 100 requests/s."""

from __future__ import annotations

import openai
from openai.types.chat import ChatCompletion

from .vlm import Backend, Completion, Request, http_client, parse_json


class OpenAIBackend(Backend):
    name = "openai-compatible"
    api_errors = (openai.APIError,)

    def client(self, connections: int | None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=http_client(openai, connections, self.timeout),
        )

    def body(self, request: Request) -> dict:
        """The Chat Completions request body."""
        return {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": [
                {"role": "system", "content": request.system},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": f"data:{request.media_type};base64,{request.image_b64}"
                            },
                        },
                        {"type": "text", "text": request.text},
                    ],
                },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.schema,
                    "strict": True,
                },
            },
        }

    async def complete(self, client: openai.AsyncOpenAI, request: Request) -> Completion:
        response = await client.post(
            "/chat/completions", body=self.body(request), cast_to=ChatCompletion
        )
        usage = response.usage
        tokens = {
            "input_tokens": usage.prompt_tokens if usage else 0,
            "output_tokens": usage.completion_tokens if usage else 0,
        }
        if not response.choices:
            return Completion(malformed="no choices in the response", **tokens)
        choice = response.choices[0]
        refusal = getattr(choice.message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            return Completion(refusal=(refusal or "content_filter")[:200], **tokens)
        return parse_json(choice.message.content or "", **tokens)

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, openai.APIConnectionError):  # includes timeouts
            return True
        return isinstance(error, openai.APIStatusError) and (
            error.status_code == 429 or error.status_code >= 500
        )
