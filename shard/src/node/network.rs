//! openraft's network over the node's wire: its QUIC endpoint, or the simulator's network.

use std::net::SocketAddr;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;

use super::rpc::{decode, encode, RaftRpc, Request, Response};
use crate::net::{NetError, Wire};
use crate::raft::{NodeId, TypeConfig};

/// Makes connections to the replicas of one chain.
#[derive(Clone)]
pub struct Network {
    endpoint: Wire,
    chain: u32,
    /// This replica.
    me: NodeId,
}

impl Network {
    /// Raft traffic of `chain` from replica `me` over `endpoint`.
    pub fn new(endpoint: Wire, chain: u32, me: NodeId) -> Self {
        Self { endpoint, chain, me }
    }
}

/// A connection to one replica (the endpoint shares one QUIC connection per peer).
pub struct Peer {
    endpoint: Wire,
    chain: u32,
    me: NodeId,
    target: NodeId,
    addr: Result<SocketAddr, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            endpoint: self.endpoint.clone(),
            chain: self.chain,
            me: self.me,
            target,
            addr: node.addr.parse().map_err(|e| format!("bad address {:?} of node {target}: {e}", node.addr)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Peer {
    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, BasicNode, E>> {
        let addr = self.addr.clone().map_err(|m| RPCError::Unreachable(Unreachable::new(&Msg(m))))?;
        let rpc_type = match rpc {
            RaftRpc::Append(_) => RPCTypes::AppendEntries,
            RaftRpc::Snapshot(_) => RPCTypes::InstallSnapshot,
            RaftRpc::Vote(_) => RPCTypes::Vote,
        };
        let req = encode(&Request::Raft { chain: self.chain, rpc });
        let bytes =
            self.endpoint.call(self.target, addr, req, option.hard_ttl()).await.map_err(|e: NetError| match e {
                // A slow answer is not a lost peer: openraft retries a timeout at once, while an
                // unreachable peer is left alone for a back-off (half a second), which under load
                // stalled replication to a follower that had only been slow to fsync.
                NetError::Timeout(timeout) => {
                    RPCError::Timeout(Timeout { action: rpc_type, id: self.me, target: self.target, timeout })
                }
                e if e.is_retryable() => RPCError::Unreachable(Unreachable::new(&e)),
                e => RPCError::Network(NetworkError::new(&e)),
            })?;
        decode(&bytes).map_err(|m| RPCError::Network(NetworkError::new(&Msg(m))))
    }

    fn unexpected<E: std::error::Error>(r: Response) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&Msg(format!("unexpected answer: {r:?}"))))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRpc::Append(rpc), &option).await? {
            Response::Append(Ok(r)) => Ok(r),
            Response::Append(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(RaftRpc::Snapshot(rpc), &option).await? {
            Response::Snapshot(Ok(r)) => Ok(r),
            Response::Snapshot(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRpc::Vote(rpc), &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
    use openraft::{BasicNode, Vote};

    use super::Network;
    use crate::net::{FnHandler, PeerIdentity, SimNet, Wire};

    fn attach(net: &SimNet, id: u64) -> Wire {
        let identity = PeerIdentity { node_id: Some(id), role: Some("replica".into()), ..PeerIdentity::default() };
        let handler = FnHandler(|_: PeerIdentity, _: Bytes| async { Ok(Bytes::new()) });
        Wire::Sim(net.attach(id, identity, Arc::new(handler)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_late_is_a_timeout_and_one_that_is_gone_is_unreachable() {
        let net = SimNet::new(1, Duration::from_millis(1), Duration::ZERO);
        let mut network = Network::new(attach(&net, 1), 7, 1);
        attach(&net, 2);
        let mut peer = network.new_client(2, &BasicNode::new("127.0.0.1:1")).await;
        let vote = openraft::raft::VoteRequest::new(Vote::new(1, 1), None);

        // Slow (cut off for now): openraft retries a timeout at once, with no back-off.
        net.isolate(2, true);
        let slow = peer.vote(vote.clone(), RPCOption::new(Duration::from_millis(100))).await;
        match slow {
            Err(RPCError::Timeout(t)) => {
                assert_eq!((t.action, t.id, t.target, t.timeout), (RPCTypes::Vote, 1, 2, Duration::from_millis(100)));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }

        // Gone: unreachable, which openraft backs off from.
        net.isolate(2, false);
        net.detach(2);
        let gone = peer.vote(vote, RPCOption::new(Duration::from_millis(100))).await;
        assert!(matches!(gone, Err(RPCError::Unreachable(_))), "{gone:?}");
    }
}
