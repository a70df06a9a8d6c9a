//! The one middleware in front of every route of both listeners: the request log and
//! span ([`super::request_log`]), the header-size limit and `Connection: close` while
//! draining ([`super::limits`]).
//!
//! Written as a `Transform` with its own future rather than with `from_fn`: each
//! `from_fn` layer boxes the inner service's future and moves the request through an
//! async block, which cost about as much as the GeoIP lookup of a request (callgrind,
//! `bench/run.sh profile`). This one allocates nothing per request.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, ResponseError};

use super::limits;
use super::request_log::{RequestLog, Settings};

/// Wraps an app: `App::new().wrap(Front::new(state.request_log()))`.
pub struct Front {
    log: Settings,
}

impl Front {
    /// With the request log's settings (which requests it writes).
    pub fn new(log: Settings) -> Front {
        Front { log }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Front
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = FrontService<S>;
    type InitError = ();
    type Future = Ready<Result<FrontService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(FrontService {
            service,
            log: self.log,
        }))
    }
}

pub struct FrontService<S> {
    service: S,
    log: Settings,
}

impl<S, B> Service<ServiceRequest> for FrontService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = FrontFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let log = RequestLog::start(&req, self.log);
        let state = match limits::check_headers(&req) {
            Ok(()) => {
                let _entered = log.span().map(|s| s.enter());
                State::Serving {
                    fut: self.service.call(req),
                }
            }
            Err(refusal) => State::Refused {
                res: Some(
                    req.into_response(refusal.error_response())
                        .map_into_right_body(),
                ),
            },
        };
        FrontFuture {
            state,
            log: Some(log),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct FrontFuture<F, B> {
        #[pin]
        state: State<F, B>,
        log: Option<RequestLog>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Serving { #[pin] fut: F },
        Refused { res: Option<ServiceResponse<EitherBody<B>>> },
    }
}

impl<F, B> Future for FrontFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.state.project() {
            StateProj::Serving { fut } => {
                let _entered = this.log.as_ref().and_then(|l| l.span()).map(|s| s.enter());
                match fut.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(res) => res.map(ServiceResponse::map_into_left_body),
                }
            }
            StateProj::Refused { res } => {
                Ok(res.take().expect("FrontFuture polled after it completed"))
            }
        };
        let log = this
            .log
            .take()
            .expect("FrontFuture polled after it completed");
        let mut res = log.finish(res);
        if let Ok(res) = &mut res {
            limits::close_if_draining(res);
        }
        Poll::Ready(res)
    }
}
